"""Use cases over the store, the bus and the job engine. The API is a presenter over these."""
