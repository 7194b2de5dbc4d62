"""Software-defined assets, by group: experiment (spec, baseline), candidates, frontier."""
