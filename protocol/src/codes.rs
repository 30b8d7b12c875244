//! One macro for the wire's one-byte code tables: an enum, the byte each
//! value travels as, and the name each goes by in logs, scripts and
//! recordings, with the lookups both ways, defined in one place.

/// Defines an enum carried on the wire as one byte:
///
/// ```text
/// wire_enum! {
///     /// Docs.
///     pub enum Lane {
///         /// Docs.
///         Control = 1 => "control",
///     }
/// }
/// ```
///
/// gives `Lane` (`#[repr(u8)]`, `Copy`, `Eq`, `Ord`, `Hash`), `Lane::ALL`
/// in code order, `from_u8`, `name` and `from_name`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $code, )+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The value with this wire code.
            pub fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($code => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// Its name in logs, scripts and recordings.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The value with this name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.name() == name)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    wire_enum! {
        /// A test table.
        enum Colour {
            /// Red.
            Red = 1 => "red",
            /// Green.
            Green = 7 => "green",
        }
    }

    #[test]
    fn codes_and_names_go_both_ways() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::Green]);
        assert_eq!(Colour::from_u8(7), Some(Colour::Green));
        assert_eq!(Colour::from_u8(2), None);
        assert_eq!(Colour::Green as u8, 7);
        assert_eq!(Colour::from_name("red"), Some(Colour::Red));
        assert_eq!(Colour::Red.name(), "red");
        assert_eq!(Colour::from_name("Red"), None);
    }
}
