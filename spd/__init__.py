"""spd: the SelfPrivacy server daemon."""
