"""spdctl: the command line for the SelfPrivacy server daemon, a D-Bus client."""
