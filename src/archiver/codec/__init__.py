"""Bitstream code: latent frequency tables, the range coder, weight blobs. numpy only, no torch."""
