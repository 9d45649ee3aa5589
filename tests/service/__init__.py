"""Tests of the HTTP service (a package so its modules can share ``support``)."""
