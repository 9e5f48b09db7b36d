"""What several drivers share: HMAC-signed URLs and worker threads."""
