//! `/datavolume-validate`: upstream's DataVolume rules (`cdi_crds::validate`) on CREATE and
//! UPDATE; pure, no API calls. An update must leave the spec as it was (but for multi-stage
//! checkpoints); one that does is admitted without checking the rest again, so that labels,
//! annotations and finalizers of a DataVolume admitted under older rules can still change.

use kube::core::admission::{AdmissionResponse, Operation};

use super::review::{self, Refusal, Request};

/// Admits or refuses one DataVolume request.
pub fn admit(request: &Request) -> AdmissionResponse {
    let refuse = |message: String| review::refuse(request, Refusal::invalid(message));
    let dv = match review::data_volume(request, false) {
        Ok(dv) => dv,
        Err(e) => return review::refuse(request, Refusal::bad_request(e.to_string())),
    };
    if request.operation == Operation::Update {
        let old = match review::data_volume(request, true) {
            Ok(old) => old,
            Err(e) => return review::refuse(request, Refusal::bad_request(e.to_string())),
        };
        if let Err(e) = cdi_crds::validate::validate_update(&old.spec, &dv.spec) {
            return refuse(e.to_string());
        }
        if old.spec == dv.spec {
            return review::allow(request);
        }
    }
    match cdi_crds::validate::validate(&dv) {
        Ok(()) => review::allow(request),
        Err(e) => refuse(e.to_string()),
    }
}
