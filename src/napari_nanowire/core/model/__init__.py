"""Encoders, input normalisation and the model file that carries them."""
