"""Tenant graphs: write parsing, LMDB tables, the lmdb and csr engines, the bulk loader."""
