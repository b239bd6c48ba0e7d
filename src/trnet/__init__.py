"""TRNet: noise-robust speech emotion recognition (Chen & Zhang) with a frozen SE front-end,
an SNR-aware module, and low-level (feature) plus high-level (representation) refinement."""

__version__ = "0.1.0"
