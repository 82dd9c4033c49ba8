"""Tests of the ops layer."""
