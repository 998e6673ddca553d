"""Evidence: content-addressed blobs per tenant that actions reference and receipts list."""
