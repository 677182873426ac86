//! Procedural macros for mcall's generated code.
//!
//! - [`spec_guard!`](macro@spec_guard): fails compilation when `spec/` changed after `generated/`
//!   was generated, and makes cargo rebuild the crate whenever a spec file changes.
//! - [`WireName`](derive@WireName): `as_str`, `Display`, `FromStr` and `ALL` for the unit enums of
//!   the API, from their `#[serde(rename = "...")]` wire names.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::path::PathBuf;

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{Data, DeriveInput, Fields, LitStr, Token, parse_macro_input};

/// `spec_guard!(fingerprint = "<digest>", dir = "../spec")`: the digest is the one
/// `cargo xtask generate` recorded; `dir` is relative to the crate's manifest.
#[proc_macro]
pub fn spec_guard(input: TokenStream) -> TokenStream {
    let args = parse_macro_input!(input as GuardArgs);
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default();
    let dir = manifest.join(args.dir.value());
    let spec = match mcall_codegen::SpecFiles::read_dir(&dir) {
        Ok(spec) => spec,
        Err(e) => {
            let message = format!("spec_guard!: cannot read {}: {e}", dir.display());
            return syn::Error::new(args.dir.span(), message)
                .to_compile_error()
                .into();
        }
    };
    // include_bytes! makes rustc record each spec file as a dependency, so editing one re-runs
    // this check on the next build.
    let tracked = spec.files.keys().map(|name| {
        let path = dir.join(name).to_string_lossy().into_owned();
        quote! { const _: &[u8] = include_bytes!(#path); }
    });
    let stale = (spec.fingerprint() != args.fingerprint.value()).then(|| {
        quote! { compile_error!("spec/ changed since generation: run `cargo xtask generate`"); }
    });
    quote! {
        #(#tracked)*
        #stale
    }
    .into()
}

struct GuardArgs {
    fingerprint: LitStr,
    dir: LitStr,
}

impl Parse for GuardArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut fingerprint = None;
        let mut dir = None;
        while !input.is_empty() {
            let key: syn::Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            match key.to_string().as_str() {
                "fingerprint" => fingerprint = Some(value),
                "dir" => dir = Some(value),
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown argument `{other}` (expected fingerprint, dir)"),
                    ));
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        let missing = |what: &str| {
            syn::Error::new(
                Span::call_site(),
                format!("spec_guard! needs `{what} = \"...\"`"),
            )
        };
        Ok(Self {
            fingerprint: fingerprint.ok_or_else(|| missing("fingerprint"))?,
            dir: dir.ok_or_else(|| missing("dir"))?,
        })
    }
}

/// Derives wire-name helpers for a unit enum whose variants carry `#[serde(rename = "...")]`.
#[proc_macro_derive(WireName)]
pub fn derive_wire_name(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match wire_name(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn wire_name(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            input,
            "WireName only applies to enums",
        ));
    };
    let mut idents = Vec::new();
    let mut wires = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            return Err(syn::Error::new_spanned(
                variant,
                "WireName only applies to unit variants",
            ));
        }
        idents.push(&variant.ident);
        wires.push(serde_rename(variant)?.unwrap_or_else(|| variant.ident.to_string()));
    }
    let name = &input.ident;
    let count = idents.len();
    let error = format!(
        "is not a valid {name} (expected one of: {})",
        wires.join(", ")
    );
    Ok(quote! {
        impl #name {
            /// Every value, in declaration order.
            pub const ALL: [#name; #count] = [#(#name::#idents),*];

            /// The value as it appears in YAML and JSON.
            pub const fn as_str(&self) -> &'static str {
                match self { #(#name::#idents => #wires,)* }
            }
        }

        impl ::std::fmt::Display for #name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for #name {
            type Err = ::std::string::String;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    #(#wires => Ok(#name::#idents),)*
                    other => Err(format!("{other:?} {}", #error)),
                }
            }
        }
    })
}

fn serde_rename(variant: &syn::Variant) -> syn::Result<Option<String>> {
    let mut rename = None;
    for attr in variant.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                rename = Some(meta.value()?.parse::<LitStr>()?.value());
            } else if meta.input.peek(Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            }
            Ok(())
        })?;
    }
    Ok(rename)
}
