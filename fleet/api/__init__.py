"""What every app's API shares: permissions, pagination, error mapping, the router and health."""
