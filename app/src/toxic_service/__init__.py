"""toxic-service: toxicity scores per comment (the model bundle's labels), over HTTP, on a 1 GB host."""

__version__ = "0.1.0"
