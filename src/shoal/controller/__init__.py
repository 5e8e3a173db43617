"""The controller: REST API, agent gateway, scheduler, flags and the store behind them."""
