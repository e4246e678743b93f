"""Threshold Schnorr with FROST (RFC 9591): groups, key records, DKG and signing (issue 16)."""

from __future__ import annotations

from .scheme import FROST_SCHEMES, SCHEMES, group_for

__all__ = ["FROST_SCHEMES", "SCHEMES", "group_for"]
