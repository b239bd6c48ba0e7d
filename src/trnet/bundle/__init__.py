"""Building the model that ships inside the package (`trnet.pretrained`): one recipe
(`recipes/pretrained.toml`), one resumable command (`trnet bundle RECIPE`), from the corpora
to the bundle, its leave-one-corpus-out evaluation and the model card's tables. See
`pipeline.py` for the stages and `plan.py` for where they write."""
