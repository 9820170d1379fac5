//! Instruments: what an event's `instrument` id stands for.
//!
//! The ring's header carries a table of these (see [`crate::ring`]) so any
//! reader can turn an id back into an exchange, a symbol and the scales of
//! its fixed-point prices and quantities.

use crate::event::Exchange;
use crate::fixed;

/// Longest symbol the ring's instrument table stores, in bytes.
pub const MAX_SYMBOL_LEN: usize = 32;

/// An instrument as the ring knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Instrument {
    pub exchange: Exchange,
    /// The exchange's own spelling (`BTC-USD`, `BTC/USD`, `BTCUSDT`).
    pub symbol: String,
    /// Decimal places of prices (a price `p` means `p / 10^price_scale`).
    pub price_scale: u8,
    /// Decimal places of quantities.
    pub qty_scale: u8,
}

/// Why an instrument cannot be described to the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstrumentError {
    EmptySymbol,
    SymbolTooLong { symbol: String },
    ScaleTooLarge { symbol: String, scale: u8 },
}

impl std::fmt::Display for InstrumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstrumentError::EmptySymbol => f.write_str("instrument symbol is empty"),
            InstrumentError::SymbolTooLong { symbol } => write!(
                f,
                "instrument symbol {symbol:?} is longer than {MAX_SYMBOL_LEN} bytes"
            ),
            InstrumentError::ScaleTooLarge { symbol, scale } => write!(
                f,
                "instrument {symbol:?}: scale {scale} is larger than {}",
                fixed::MAX_SCALE
            ),
        }
    }
}

impl std::error::Error for InstrumentError {}

impl Instrument {
    pub fn new(
        exchange: Exchange,
        symbol: &str,
        price_scale: u8,
        qty_scale: u8,
    ) -> Result<Instrument, InstrumentError> {
        if symbol.is_empty() {
            return Err(InstrumentError::EmptySymbol);
        }
        if symbol.len() > MAX_SYMBOL_LEN {
            return Err(InstrumentError::SymbolTooLong {
                symbol: symbol.to_owned(),
            });
        }
        for scale in [price_scale, qty_scale] {
            if scale > fixed::MAX_SCALE {
                return Err(InstrumentError::ScaleTooLarge {
                    symbol: symbol.to_owned(),
                    scale,
                });
            }
        }
        Ok(Instrument {
            exchange,
            symbol: symbol.to_owned(),
            price_scale,
            qty_scale,
        })
    }

    /// `exchange:symbol`, the name the gateway and the CLI use.
    pub fn qualified_name(&self) -> String {
        format!("{}:{}", self.exchange.name(), self.symbol)
    }
}
