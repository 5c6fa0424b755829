"""The dual-latent Gumbel-Softmax VAE task: model, loss and the Task the engine drives."""
