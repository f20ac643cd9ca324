"""toxic-service: six toxicity scores per comment, over HTTP, on a 1 GB host."""

__version__ = "0.1.0"
