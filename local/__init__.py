"""Run the real Pulumi program without the Pulumi CLI: under mocks, or into an embedded emulator."""
