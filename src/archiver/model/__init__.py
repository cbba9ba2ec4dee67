"""Training machinery every codec shares: the training prior, int8 weights, convergence, checkpoints,
distributed training, refinement, the denoiser post-filter and the adversarial and perceptual losses.

Importing this package needs torch (the ``train`` extra); reading archives does not.
"""

#: Negative slope of every LeakyReLU in the shipped networks (torch modules and ONNX graphs alike).
LEAKY_SLOPE = 0.2
