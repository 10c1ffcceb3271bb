"""Shared by the whole suite: this folder is on sys.path (pytest's rootdir conftest), so every test
module imports the helpers here (`policy_helpers`) wherever it sits in the tree."""
