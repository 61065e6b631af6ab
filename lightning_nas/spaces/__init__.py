"""Search spaces: the DARTS supernet, the ENAS micro and macro child networks, the PNAS cell space."""
