"""Readers for what users bring: GloVe files, Keras tokenizers and models, vocabulary dumps.

Each reader turns a file into plain Python/NumPy values (word/index pairs,
tokenizer settings, a rebuilt model) and refuses a malformed file with one
`InputFileError` naming the file and the defect, before anything is written.
"""

from __future__ import annotations

from toxic_service.errors import BadRequest


class InputFileError(BadRequest):
    """A file given on the command line is missing, malformed or of the wrong kind."""

    code = "bad_input_file"
