//! Rendering generated Rust: tokens → prettyplease → the layout of hand-written code, and the
//! doc comments every generated item carries.

use proc_macro2::TokenStream;
use quote::quote;

pub(super) fn render(tokens: TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens)
        .unwrap_or_else(|e| panic!("the Rust emitter produced invalid tokens: {e}"));
    separate_items(&prettyplease::unparse(&file))
}

/// prettyplease puts top-level items on consecutive lines; a blank line after each item (and
/// after the imports) makes the generated code read like hand-written code.
fn separate_items(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = String::with_capacity(code.len() + lines.len());
    // Inside a multi-line inner attribute (`#![allow(` … `)]`), whose end closes the header.
    let mut in_inner_attribute = false;
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        out.push('\n');
        let next = lines.get(i + 1).copied().unwrap_or("");
        let inner_attribute_ended = in_inner_attribute && *line == ")]";
        if line.starts_with("#![") && !line.ends_with(']') {
            in_inner_attribute = true;
        } else if inner_attribute_ended {
            in_inner_attribute = false;
        }
        // A method of an impl ended and another item of the impl follows.
        let method_ended = *line == "    }" && next.starts_with("    ");
        let item_ended = *line == "}"
            || method_ended
            || (line.starts_with("pub const ") && line.ends_with(';'))
            || (line.starts_with("pub mod ") && !next.starts_with("pub mod "))
            || (line.starts_with("use ")
                && !next.starts_with("use ")
                && !next.starts_with("#[allow"))
            || (line.starts_with("pub use ") && !next.starts_with("pub use "))
            || *line == ");"
            || (line.starts_with("//!") && !next.starts_with("//!") && !next.starts_with("#!"))
            || (line.starts_with("#![") && line.ends_with(']') && !next.starts_with("#!["))
            || (inner_attribute_ended && !next.starts_with("#!["));
        if item_ended && !next.is_empty() {
            out.push('\n');
        }
    }
    out
}

/// The first doc line of every generated file.
pub(super) fn notice() -> TokenStream {
    let line = format!(" {}", crate::GENERATED_NOTICE);
    quote! { #![doc = #line] }
}

/// Doc attributes, one per line of `text` (none without a text).
pub(super) fn docs(text: Option<&str>) -> TokenStream {
    let Some(text) = text else { return quote!() };
    let lines = text.lines().map(|l| {
        if l.is_empty() {
            String::new()
        } else {
            format!(" {l}")
        }
    });
    quote! { #(#[doc = #lines])* }
}
