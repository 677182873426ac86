//! The API client's fence: a replica that does not lead (not yet, or no longer: after a pause
//! past its lease, say) sends no write to the API server, whatever code path asks for one. Reads
//! and watches pass. The Lease has its own client, outside the fence.

use http::{Method, Request};
use kube::client::Body;
use tower::BoxError;
use tower::filter::{FilterLayer, Predicate};

use crate::controller::lease::Leading;

/// Refuses every request but reads while `leading` says this process does not lead.
#[derive(Clone, Debug)]
pub struct Fence {
    leading: Leading,
}

/// The layer to put on the operator's client.
pub fn layer(leading: Leading) -> FilterLayer<Fence> {
    FilterLayer::new(Fence { leading })
}

/// The error a fenced write fails with.
#[derive(Debug, thiserror::Error)]
#[error("not sent: this replica does not lead (it does not hold the operator's Lease)")]
pub struct NotLeading;

impl Predicate<Request<Body>> for Fence {
    type Request = Request<Body>;

    fn check(&mut self, request: Request<Body>) -> Result<Request<Body>, BoxError> {
        if request.method() == Method::GET || self.leading.now() {
            Ok(request)
        } else {
            Err(Box::new(NotLeading))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn request(method: Method) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri("/apis/mcall.tz.io/v1/namespaces/ns/mcalltasks/t/status")
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn a_replica_that_does_not_lead_reads_but_never_writes() {
        let mut fence = Fence {
            leading: Leading::new(Duration::from_secs(1)),
        };
        assert!(fence.check(request(Method::GET)).is_ok());
        for method in [Method::PATCH, Method::POST, Method::PUT, Method::DELETE] {
            let refused = fence.check(request(method.clone())).unwrap_err();
            assert!(refused.to_string().contains("does not lead"), "{method}");
        }
        let mut leader = Fence {
            leading: Leading::always(),
        };
        assert!(leader.check(request(Method::PATCH)).is_ok());
    }
}
