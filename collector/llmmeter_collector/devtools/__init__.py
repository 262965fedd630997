"""Development tools the service never imports: the fake provider, synthetic data, the demo."""
