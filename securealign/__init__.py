"""securealign: linear alignment of language-model representations, evaluated under homomorphic encryption."""

__version__ = "0.1.0"
