"""Experiments: a recipe of teachers, methods and seeds, trained, evaluated and reported."""
