//! Chain access behind one trait, with two real implementations: `subtensor` (a thin JSON-RPC
//! client of a live subtensor node) and `embedded` (an in-process model of the pallet rules the
//! node relies on, for the local demo subnet and tests).

pub mod commit;
pub mod embedded;
pub mod epoch;
pub mod standing;
pub mod subtensor;
pub mod timelock;
pub mod weights;

use std::net::IpAddr;

use futures::future::BoxFuture;

use super::keypair::Keypair;

/// An axon as the chain stores it (`AxonInfo`). `ip == 0` means never served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AxonInfo {
    pub block: u64,
    pub version: u32,
    pub ip: u128,
    pub port: u16,
    pub ip_type: u8,
    pub protocol: u8,
}

impl AxonInfo {
    pub fn is_served(&self) -> bool {
        self.ip != 0
    }

    /// The IP in text form (IPv4 is stored as its integer value in the u128), or what is wrong
    /// with it.
    pub fn ip_string(&self) -> String {
        match self.address() {
            Ok(ip) => ip.to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// The announced address, strictly: an IPv4 value above 2³² or an unknown type is refused,
    /// not truncated (truncated, a lie would read as 0.0.0.0: this machine).
    pub fn address(&self) -> Result<IpAddr, BadAddress> {
        match self.ip_type {
            4 => u32::try_from(self.ip)
                .map(|v4| IpAddr::from(std::net::Ipv4Addr::from(v4)))
                .map_err(|_| BadAddress::Ipv4(self.ip)),
            6 => Ok(IpAddr::from(std::net::Ipv6Addr::from(self.ip))),
            other => Err(BadAddress::IpType(other)),
        }
    }
}

/// An announced address that is no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadAddress {
    #[error("invalid IPv4 value {0}")]
    Ipv4(u128),
    #[error("invalid IP type {0}")]
    IpType(u8),
}

/// Whether an address is one a validator on a public network should dial: public unicast
/// (not loopback, private, shared/CGNAT, link-local, unspecified, broadcast, multicast,
/// documentation or unique-local ranges).
pub fn is_public_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped().or_else(|| embedded_v4(v6)) {
            Some(v4) => is_public_unicast(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
                    || first == 0x2001 && v6.segments()[1] == 0x0db8)
            }
        },
    }
}

/// The IPv4 address inside a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let pair = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        std::net::Ipv4Addr::new(a, b, c, d)
    };
    match v6.segments() {
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(pair(hi, lo)),
        [0x2002, hi, lo, ..] => Some(pair(hi, lo)),
        _ => None,
    }
}

impl AxonInfo {
    /// Chain encoding of an address: (value, ip_type).
    pub fn encode_ip(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 4),
            IpAddr::V6(v6) => (u128::from(v6), 6),
        }
    }
}

/// One registered neuron of a subnet. Scores are fractions (the chain's u16 / 65535).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Neuron {
    pub uid: u16,
    pub hotkey: String,
    pub coldkey: String,
    pub active: bool,
    pub axon: AxonInfo,
    /// Stake on this subnet, in rao (10⁻⁹ of a token; alpha since dTAO).
    pub stake_rao: u64,
    /// Root (TAO) stake counted on this subnet, in rao (0 where the runtime does not say).
    pub root_stake_rao: u64,
    /// What today's SDK compares: alpha plus `TaoWeight` × root stake, in rao (the runtime's
    /// `get_metagraph`; alpha alone where the runtime has no such API).
    pub total_stake_rao: u64,
    pub emission_rao: u64,
    pub rank: f64,
    pub incentive: f64,
    pub consensus: f64,
    pub trust: f64,
    pub validator_trust: f64,
    pub dividends: f64,
    pub last_update: u64,
    pub validator_permit: bool,
    /// The chain deregisters the lowest pruning score first (outside immunity).
    pub pruning_score: f64,
}

impl Neuron {
    /// Alpha stake, tokens.
    pub fn stake_tokens(&self) -> f64 {
        self.stake_rao as f64 / 1e9
    }

    /// Total stake as bittensor 11.3's metagraph counts it, tokens.
    pub fn total_stake_tokens(&self) -> f64 {
        self.total_stake_rao as f64 / 1e9
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metagraph {
    pub netuid: u16,
    pub block: u64,
    pub neurons: Vec<Neuron>,
}

impl Metagraph {
    pub fn by_hotkey(&self, hotkey: &str) -> Option<&Neuron> {
        self.neurons.iter().find(|n| n.hotkey == hotkey)
    }
}

/// The subnet settings the node's loops depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hyperparams {
    pub tempo: u16,
    pub weights_rate_limit: u64,
    pub weights_version_key: u64,
    pub commit_reveal_enabled: bool,
    /// Blocks a new registration is protected from deregistration.
    pub immunity_period: u64,
    /// What registering costs now (burned), in rao.
    pub registration_cost_rao: u64,
}

/// What a miner publishes with `serve_axon`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeAxon {
    pub netuid: u16,
    pub version: u32,
    pub ip: IpAddr,
    pub port: u16,
    /// The SDK sends 4.
    pub protocol: u8,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ChainError {
    #[error("chain unreachable at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// The chain refused a transaction; `name` is the pallet error (e.g. `SettingWeightsTooFast`).
    #[error("{}", explain(name, detail))]
    Refused { name: String, detail: String },
    #[error("unexpected chain data: {0}")]
    Decode(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ChainError {
    pub fn refused(name: &str, detail: impl Into<String>) -> Self {
        Self::Refused {
            name: name.to_string(),
            detail: detail.into(),
        }
    }

    /// The pallet error's name, if this was a refusal.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Self::Refused { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Says in operator words what the chain's error names mean.
fn explain(name: &str, detail: &str) -> String {
    let plain = match name {
        "CommitRevealEnabled" => {
            "commit-reveal is enabled on this subnet, so plain set_weights is refused; weights must be committed (timelocked) instead"
        }
        "SettingWeightsTooFast" => {
            "weights were set too recently (the subnet's weights rate limit has not passed)"
        }
        "IncorrectWeightVersionKey" => {
            "the weights version key is below the subnet's required version"
        }
        "NeuronNoValidatorPermit" => "this hotkey has no validator permit on the subnet",
        "NotEnoughStakeToSetWeights" => "this hotkey has too little stake to set weights",
        "HotKeyNotRegisteredInSubNet" => "this hotkey is not registered on the subnet",
        "ServingRateLimitExceeded" => "the axon was served too recently (serving rate limit)",
        "UidVecContainInvalidOne" => "a weight targets a uid that does not exist",
        "DuplicateUids" => "the weights name a uid twice",
        "WeightVecNotEqualSize" => "uids and weights differ in length",
        "InvalidPort" => "the axon port is invalid",
        "InvalidIpType" => "the axon IP type is invalid",
        "InvalidIpAddress" => "the axon IP address is invalid",
        "RevealTooEarly" => "the commit's reveal window has not opened yet",
        "ExpiredWeightCommit" => "the commit's reveal window has passed; commit again",
        "NoWeightsCommitFound" => "there is no commit to reveal",
        "InvalidRevealCommitHashNotMatch" => "the reveal does not match the committed hash",
        "TooManyUnrevealedCommits" => "too many commits are waiting for their reveal (10 at most)",
        "CommitRevealDisabled" => "commit-reveal is off on this subnet: set weights directly",
        _ => "",
    };
    let mut text = format!("chain refused: {name}");
    if !plain.is_empty() {
        text.push_str(" — ");
        text.push_str(plain);
    }
    if !detail.is_empty() {
        text.push_str(" (");
        text.push_str(detail);
        text.push(')');
    }
    text
}

/// A chain the node reads and writes. Object-safe so the runtime can hold either implementation.
pub trait Chain: Send + Sync {
    /// What the operator sees: network name and endpoint.
    fn describe(&self) -> String;
    fn block(&self) -> BoxFuture<'_, Result<u64, ChainError>>;
    fn metagraph(&self, netuid: u16) -> BoxFuture<'_, Result<Metagraph, ChainError>>;
    fn hyperparams(&self, netuid: u16) -> BoxFuture<'_, Result<Hyperparams, ChainError>>;
    /// Publishes the signer's axon. Skips the call when the chain already holds the same.
    fn serve_axon<'a>(
        &'a self,
        signer: &'a Keypair,
        axon: ServeAxon,
    ) -> BoxFuture<'a, Result<(), ChainError>>;
    /// The block each of `uids` registered at (for immunity), where the chain knows it.
    fn registration_blocks(
        &self,
        netuid: u16,
        uids: Vec<u16>,
    ) -> BoxFuture<'_, Result<std::collections::BTreeMap<u16, u64>, ChainError>>;
    /// How the subnet wants weights now (plain, hash commit-reveal, timelocked).
    fn weights_mode(&self, netuid: u16) -> BoxFuture<'_, Result<commit::WeightsMode, ChainError>>;
    /// The subnet's epoch state at the head (stateful or legacy rule), read at one block.
    fn epoch(&self, netuid: u16) -> BoxFuture<'_, Result<epoch::EpochState, ChainError>>;
    /// Commits weights by their salted hash; what the reveal needs and its window.
    fn commit_weights<'a>(
        &'a self,
        signer: &'a Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> BoxFuture<'a, Result<commit::PendingCommit, ChainError>>;
    /// Commits weights timelocked to a drand round (commit-reveal v4) with the runtime's `call`.
    fn commit_timelocked<'a>(
        &'a self,
        signer: &'a Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> BoxFuture<'a, Result<commit::TimelockedCommit, ChainError>>;
    /// Reveals a hash commit inside its window.
    fn reveal_weights<'a>(
        &'a self,
        signer: &'a Keypair,
        commit: &'a commit::PendingCommit,
    ) -> BoxFuture<'a, Result<(), ChainError>>;
    /// Sets weights already normalised to u16 (see `weights::normalize_for_emit`).
    fn set_weights<'a>(
        &'a self,
        signer: &'a Keypair,
        netuid: u16,
        uids: Vec<u16>,
        weights: Vec<u16>,
        version_key: u64,
    ) -> BoxFuture<'a, Result<(), ChainError>>;
}

/// `--subtensor.network` resolved to what to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Remote { name: String, url: String },
    Embedded,
}

/// A subtensor network as the operator names it (`[subtensor] network`, `--subtensor.network`):
/// bittensor's names, the node's own embedded chain, or a websocket URL. Parsed once, at the
/// edge; written back as the same words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkName {
    Finney,
    Test,
    Archive,
    Local,
    Embedded,
    Url(String),
    /// A name bittensor does not know: usable with an explicit `chain_endpoint` only.
    Other(String),
}

impl std::str::FromStr for NetworkName {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "finney" => Self::Finney,
            "test" => Self::Test,
            "archive" => Self::Archive,
            "local" => Self::Local,
            "embedded" => Self::Embedded,
            url if url.starts_with("ws://") || url.starts_with("wss://") => Self::Url(url.into()),
            other => Self::Other(other.into()),
        })
    }
}

impl std::fmt::Display for NetworkName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Finney => "finney",
            Self::Test => "test",
            Self::Archive => "archive",
            Self::Local => "local",
            Self::Embedded => "embedded",
            Self::Url(url) | Self::Other(url) => url,
        })
    }
}

impl serde::Serialize for NetworkName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NetworkName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Ok(name) = String::deserialize(d)?.parse();
        Ok(name)
    }
}

/// A network name bittensor does not know, given without an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown subtensor network {0:?}: use finney, test, archive, local, embedded or a ws:// URL"
)]
pub struct UnknownNetwork(pub String);

impl NetworkName {
    /// Where to connect; an explicit endpoint wins over the name's own. Only a name bittensor
    /// does not know, without an endpoint, has nowhere to go.
    pub fn resolve(&self, chain_endpoint: Option<&str>) -> Result<Network, UnknownNetwork> {
        let remote = |url: &str| Network::Remote {
            name: self.to_string(),
            url: url.to_string(),
        };
        if *self == Self::Embedded {
            return Ok(Network::Embedded);
        }
        if let Some(url) = chain_endpoint.filter(|u| !u.is_empty()) {
            return Ok(remote(url));
        }
        Ok(match self {
            Self::Finney => remote("wss://entrypoint-finney.opentensor.ai:443"),
            Self::Test => remote("wss://test.finney.opentensor.ai:443"),
            Self::Archive => remote("wss://archive.chain.opentensor.ai:443"),
            Self::Local => remote("ws://127.0.0.1:9944"),
            Self::Url(url) => remote(url),
            Self::Embedded => Network::Embedded,
            Self::Other(other) => return Err(UnknownNetwork(other.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_network(
        network: &str,
        chain_endpoint: Option<&str>,
    ) -> Result<Network, UnknownNetwork> {
        let Ok(name) = network.parse::<NetworkName>();
        name.resolve(chain_endpoint)
    }

    #[test]
    fn networks_resolve_like_bittensor() {
        assert_eq!(resolve_network("embedded", None), Ok(Network::Embedded));
        assert!(
            matches!(resolve_network("local", None), Ok(Network::Remote { url, .. }) if url == "ws://127.0.0.1:9944")
        );
        assert!(
            matches!(resolve_network("finney", Some("ws://x:1")), Ok(Network::Remote { url, .. }) if url == "ws://x:1")
        );
        assert!(resolve_network("mainnet", None).is_err());
    }

    #[test]
    fn a_name_bittensor_does_not_know_needs_an_endpoint_and_is_written_back_as_given() {
        let Ok(name) = "mainnet".parse::<NetworkName>();
        assert_eq!(name, NetworkName::Other("mainnet".into()));
        assert_eq!(
            name.resolve(Some("wss://node.example:443")),
            Ok(Network::Remote {
                name: "mainnet".into(),
                url: "wss://node.example:443".into()
            })
        );
        assert_eq!(name.resolve(None), Err(UnknownNetwork("mainnet".into())));
        for text in [
            "finney",
            "test",
            "archive",
            "local",
            "embedded",
            "ws://127.0.0.1:9944",
        ] {
            let Ok(parsed) = text.parse::<NetworkName>();
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn axon_ips_encode_like_the_chain() {
        let (ip, kind) = AxonInfo::encode_ip("1.2.3.4".parse().unwrap());
        assert_eq!((ip, kind), (0x01020304, 4));
        let axon = AxonInfo {
            ip,
            ip_type: kind,
            port: 8091,
            ..Default::default()
        };
        assert_eq!(axon.ip_string(), "1.2.3.4");
        assert!(
            ChainError::refused("CommitRevealEnabled", "")
                .to_string()
                .contains("commit-reveal is enabled")
        );
    }

    #[test]
    fn announced_addresses_are_read_strictly_and_only_public_ones_are_dialled() {
        let axon = |ip: u128, ip_type: u8| AxonInfo {
            ip,
            ip_type,
            port: 1,
            ..Default::default()
        };
        // An IPv4 value past 2^32 used to truncate to 0.0.0.0 (this machine).
        assert!(axon(1 << 32, 4).address().is_err());
        assert!(axon(1, 5).address().is_err());
        assert_eq!(
            axon(0x0808_0808, 4).address(),
            Ok("8.8.8.8".parse().unwrap())
        );
        for private in [
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "198.51.100.7",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
            "192.0.0.8",
            "198.18.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
        ] {
            assert!(!is_public_unicast(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.2.3.4", "2606:4700::1111", "::ffff:8.8.4.4"] {
            assert!(is_public_unicast(public.parse().unwrap()), "{public}");
        }
    }
}
