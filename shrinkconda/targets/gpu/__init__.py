"""GPU device code and the libraries a GPU host loads."""
