"""Conversions between DeltaStore and the data types of neighbouring libraries."""
