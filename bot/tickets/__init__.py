"""The closed loop on bad reviews: what is done about a 差评 after it is given."""
