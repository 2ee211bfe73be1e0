"""The models side of the data path: the offline zoo, how each model loads, embeddings with a cache, and the
one-time set-up that prepares them."""
