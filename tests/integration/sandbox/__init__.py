"""Integration tests of the sandbox: adversarial suite with canaries, isolation, dynamic sessions on a loopback pool."""
