"""Tests of the surfaces layer."""
