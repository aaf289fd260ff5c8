"""Encoders, input normalisation and the model file that carries them.

- ``encoders``: the registered backbones and :func:`~.encoders.load_encoder`
- ``modelfile``: reading and writing the safetensors model file (never pickle)
- ``metadata``: the file's typed metadata and the checks every loaded file passes
- ``meta_fields``: typed, checked reads of JSON fields, with errors naming file and field
- ``preprocess``: the one input normalisation, and the pixel size a model trains at
- ``random_models``: random-weight model files for benchmarks and plumbing tests
"""
