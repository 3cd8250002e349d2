"""SavedModel export of reskeras models for TF Serving.

Not implemented yet (tracked as the export issue); nothing here pretends to work.
"""
