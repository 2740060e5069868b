"""The live candle stream: ``/v1/stream/candles`` websocket fan-out of md.candles.v1."""
