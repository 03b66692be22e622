"""Lambda handler package: `app` (entry), `pipeline` (pure image work), `storage` (S3 adapter)."""
