"""terrafix.sim"""
