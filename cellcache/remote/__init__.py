"""The shared remote store: the bucket, its signed manifests, signer keys, the tiered store and the commands."""
