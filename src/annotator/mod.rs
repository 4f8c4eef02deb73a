//! The ControlNet annotators the seed runs on a conditional image before its three-way
//! ControlNet: Canny here; MiDaS depth and NormalBae normals are networks not yet ported.

pub mod canny;
