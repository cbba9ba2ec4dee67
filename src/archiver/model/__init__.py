"""The learned codec: blocks, autoencoder, training prior, int8 weights, convergence and training.

Importing this package needs torch (the ``train`` extra); reading archives does not.
"""
