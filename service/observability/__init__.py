"""Operations: Prometheus metrics of every process, and the store snapshot behind the API's
gauges."""
