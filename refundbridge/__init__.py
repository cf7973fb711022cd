"""RefundBridge: the composition root, the command line and the demo."""
