"""echogen: echocardiogram video generation and analysis research, reproducible end to end."""

__version__ = "0.1.0"
