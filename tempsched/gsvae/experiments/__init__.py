"""The paper's experiments on GS-VAE runs, as evaluations (``tempsched eval NAME RUN_DIR...``).

Each module holds one or a few ``tempsched.Evaluation`` classes; the gsvae plugin registers them. They
measure through ``tempsched.gsvae.measure``, so every evaluation decodes and scores a model the same way.
"""
