"""Governed actions: preflight → approvals → execute, and the signed-receipt pipeline behind them."""
