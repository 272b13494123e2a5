"""Cantonese article tagging: pycantonese word segmentation (cached), grid-searched tag models compared with
character n-grams, baselines and the generator's oracle, and daily tags upserted into Postgres."""
