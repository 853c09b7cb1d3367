"""The consent register: patients' written consents to appear in the organisation's posts (register.py),
whether one covers a day (state.py), and the check of published posts against it (check.py)."""
