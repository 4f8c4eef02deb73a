//! The proxy's per-address limits, one-minute windows: requests that passed authentication
//! count against `rate_limit_per_minute`, failed attempts against their own limit. Junk from
//! an address (the owner's included) therefore never uses up that address's signed allowance.

use nicheimage_common::ratelimit::{Create, Limited, Windows};
use std::net::IpAddr;

/// A minute's counts for one address.
#[derive(Clone, Copy, Default)]
struct Counts {
    signed: u32,
    unsigned: u32,
}

pub struct Gate {
    signed_limit: u32,
    unsigned_limit: u32,
    windows: Windows<Counts>,
}

impl Gate {
    pub fn new(signed_limit: u32, unsigned_limit: u32) -> Self {
        Self {
            signed_limit: signed_limit.max(1),
            unsigned_limit: unsigned_limit.max(1),
            windows: Windows::default(),
        }
    }

    fn over_signed(&self, ip: IpAddr) -> Limited {
        Limited::Over {
            limit: self.signed_limit,
            what: "signed requests",
            ip,
        }
    }

    fn over_unsigned(&self, ip: IpAddr) -> Limited {
        Limited::Over {
            limit: self.unsigned_limit,
            what: "unauthenticated requests",
            ip,
        }
    }

    /// `Err` when `ip` has used up this minute's signed requests; counts nothing. Lets a
    /// request that would be refused anyway be refused before its body is read.
    pub fn check_signed(&self, ip: IpAddr) -> Result<(), Limited> {
        let full = self
            .windows
            .with(ip, Create::No, |w| w.signed >= self.signed_limit)
            .unwrap_or(false);
        if full {
            return Err(self.over_signed(ip));
        }
        Ok(())
    }

    /// `Err` when `ip` is over this minute's limit of failed authentications; counts nothing.
    /// Lets a request that can only authenticate by its body be refused before it is read.
    pub fn check_unsigned(&self, ip: IpAddr) -> Result<(), Limited> {
        let over = self
            .windows
            .with(ip, Create::No, |w| w.unsigned >= self.unsigned_limit)
            .unwrap_or(false);
        if over {
            return Err(self.over_unsigned(ip));
        }
        Ok(())
    }

    /// Counts one authenticated request from `ip`; `Err` with the reason when over the limit.
    pub fn admit_signed(&self, ip: IpAddr) -> Result<(), Limited> {
        // Only the owner gets here, so a window is always made (the cap is for junk).
        let count = self.windows.with(ip, Create::Always, |w| {
            w.signed = w.signed.saturating_add(1);
            w.signed
        });
        if count.is_some_and(|n| n > self.signed_limit) {
            return Err(self.over_signed(ip));
        }
        Ok(())
    }

    /// Counts one failed authentication from `ip`; `Err` with the reason once over its limit.
    pub fn note_unsigned(&self, ip: IpAddr) -> Result<(), Limited> {
        let count = self.windows.with(ip, Create::UnderCap, |w| {
            w.unsigned = w.unsigned.saturating_add(1);
            w.unsigned
        });
        match count {
            Some(n) if n <= self.unsigned_limit => Ok(()),
            Some(_) => Err(self.over_unsigned(ip)),
            None => Err(Limited::Untracked {
                who: "clients failing authentication",
                ip,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_does_not_use_up_signed_requests() {
        let gate = Gate::new(2, 3);
        let owner: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(gate.note_unsigned(owner).is_ok());
        }
        let refused = gate.note_unsigned(owner).unwrap_err().to_string();
        assert!(refused.contains("more than 3 unauthenticated"), "{refused}");
        // The owner's signed requests still pass, up to their own limit.
        assert!(gate.check_signed(owner).is_ok());
        assert!(gate.admit_signed(owner).is_ok());
        assert!(gate.admit_signed(owner).is_ok());
        assert_eq!(
            gate.check_signed(owner),
            Err(Limited::Over {
                limit: 2,
                what: "signed requests",
                ip: owner
            })
        );
        assert!(gate.admit_signed(owner).is_err());
        // Another address has its own windows.
        let other: IpAddr = [10, 0, 0, 2].into();
        assert!(gate.check_signed(other).is_ok());
        assert!(gate.note_unsigned(other).is_ok());
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let gate = Gate::new(5, 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(gate.note_unsigned(a).is_ok());
        assert!(gate.note_unsigned(b).is_err());
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(gate.note_unsigned(c).is_ok());
    }
}
