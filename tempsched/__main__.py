"""``python -m tempsched``: the command line (what ``torchrun -m tempsched`` starts)."""

from tempsched.cli import main

main()
