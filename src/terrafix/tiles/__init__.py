"""terrafix.tiles"""
